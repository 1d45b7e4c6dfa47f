package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReplicationTargetPolicySpec says where tenants of some namespaces may ask
// for replicas with z8r.dev/replicate-to on their PVCs and VolumeSnapshots.
// A tenant target is allowed when at least one policy that selects the
// object's namespace allows it; with no policy, or none that matches, it is
// refused (a Warning on the object, nothing created anywhere). Targets the
// administrator sets (VolumeSnapshotClass annotations, DatasetReplications,
// node annotations, a VolumeSnapshotContent's own annotation) are not
// subject to these policies.
type ReplicationTargetPolicySpec struct {
	// NamespaceSelector selects the namespaces whose PVCs and
	// VolumeSnapshots this policy applies to, by their labels. An empty
	// selector ({}) selects every namespace.
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`
	// Targets tenants of those namespaces may ask for.
	// +kubebuilder:validation:MaxItems=256
	Targets []AllowedTarget `json:"targets"`
}

// AllowedTarget allows replicas on one node in datasets strictly under one
// parent dataset.
type AllowedTarget struct {
	// Node is the name of the node that may receive replicas.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`
	// ParentDataset: a replica dataset must be a descendant of it
	// (ParentDataset/...), never ParentDataset itself. A pool name ("tank")
	// allows any dataset of the pool except its root.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	ParentDataset string `json:"parentDataset"`
}

// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=rtpol
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ReplicationTargetPolicy is an administrator's allow-list of replica
// targets for tenants (cluster-scoped; tenants should not be able to write
// it).
type ReplicationTargetPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ReplicationTargetPolicySpec `json:"spec"`
}

// +kubebuilder:object:root=true

// ReplicationTargetPolicyList is a list of ReplicationTargetPolicy.
type ReplicationTargetPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReplicationTargetPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ReplicationTargetPolicy{}, &ReplicationTargetPolicyList{})
}
