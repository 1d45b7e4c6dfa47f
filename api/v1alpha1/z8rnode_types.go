package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Z8RNodeSpec is written by the controller and by administrators, never by
// the agent.
type Z8RNodeSpec struct {
	// PinnedHostKey is the agent host key z8r trusts for this node, in
	// authorized_keys format. The controller sets it on first use; after
	// that a different key published by the agent is refused until an
	// administrator copies it here (`kubectl z8r approve-hostkey NODE`).
	// +optional
	PinnedHostKey string `json:"pinnedHostKey,omitempty"`
	// Pools are the pools this node's agent may touch, set by an
	// administrator for this node (say an HDD node's "backup" where the
	// others have "tank"). Empty: the agent's own --pools, the agent
	// DaemonSet's default for every node. The agent reads it before it
	// serves and then at each status refresh; it never writes it (the
	// admission policy refuses it on create). status.pools shows the
	// pools in force.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z][A-Za-z0-9_.:-]*$`
	// +kubebuilder:validation:items:MaxLength=255
	// +listType=set
	Pools []string `json:"pools,omitempty"`
}

// Z8RNodeStatus is published by the node's agent.
type Z8RNodeStatus struct {
	// Address is the agent's SSH endpoint, host:port.
	Address string `json:"address,omitempty"`
	// HostKey is the agent's public host key, in authorized_keys format.
	HostKey string `json:"hostKey,omitempty"`
	// HostKeyFingerprint is the SHA256 fingerprint of HostKey.
	HostKeyFingerprint string `json:"hostKeyFingerprint,omitempty"`
	// Pools the agent may touch: spec.pools when set, else its --pools.
	Pools []string `json:"pools,omitempty"`
	// PoolsFrom says where Pools come from: "spec" (this object's
	// spec.pools) or "agent" (the agent's --pools).
	// +optional
	PoolsFrom string `json:"poolsFrom,omitempty"`
	// PoolsSummary is Pools joined by commas, for kubectl columns.
	PoolsSummary string `json:"poolsSummary,omitempty"`
	// Implementation is "openzfs" or "zfs-fuse".
	Implementation string `json:"implementation,omitempty"`
	// ZFSVersion is e.g. "2.3.2", or "pool-v23" for zfs-fuse.
	ZFSVersion string `json:"zfsVersion,omitempty"`
	// Capabilities lists optional features: bookmarks, resume, raw-send, ...
	Capabilities []string `json:"capabilities,omitempty"`
	// CapabilitiesSummary is Capabilities joined by commas.
	CapabilitiesSummary string `json:"capabilitiesSummary,omitempty"`
	// Ready is true while the agent serves and its ZFS answers.
	Ready bool `json:"ready"`
	// LastHeartbeatTime is when the agent last refreshed this status.
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`
	// StartedAt is when the agent process started. A new value means the
	// agent restarted: the controller redials it at once and retries, right
	// away, the replications that were waiting for it.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// Message explains Ready=false.
	Message string `json:"message,omitempty"`
	// Conditions: HostKeyTrusted (set by the controller).
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Z8RNode is one node's ZFS agent.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=z8rn
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.address`
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.status.poolsSummary`
// +kubebuilder:printcolumn:name="ZFS",type=string,JSONPath=`.status.zfsVersion`
// +kubebuilder:printcolumn:name="Capabilities",type=string,JSONPath=`.status.capabilitiesSummary`
// +kubebuilder:printcolumn:name="Ready",type=boolean,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Host-Key",type=string,JSONPath=`.status.hostKeyFingerprint`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Z8RNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   Z8RNodeSpec   `json:"spec,omitempty"`
	Status Z8RNodeStatus `json:"status,omitempty"`
}

// Z8RNodeList is a list of Z8RNodes.
//
// +kubebuilder:object:root=true
type Z8RNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Z8RNode `json:"items"`
}

// Condition types and reasons on Z8RNode.
const (
	ConditionHostKeyTrusted = "HostKeyTrusted"
	ReasonPinnedOnFirstUse  = "PinnedOnFirstUse"
	ReasonHostKeyMatches    = "HostKeyMatches"
	ReasonHostKeyChanged    = "HostKeyChanged"
)

func init() {
	SchemeBuilder.Register(&Z8RNode{}, &Z8RNodeList{})
}
