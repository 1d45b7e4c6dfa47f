//go:build kube

package manifests

import "github.com/go-logr/logr"

func logrDiscard() logr.Logger { return logr.Discard() }
