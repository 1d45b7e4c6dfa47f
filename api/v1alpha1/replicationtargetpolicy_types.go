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
	// Targets tenants of those namespaces may ask for: at least one, at
	// most 256, unique by node and parent dataset.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +listType=map
	// +listMapKey=node
	// +listMapKey=parentDataset
	Targets []AllowedTarget `json:"targets"`
}

// AllowedTarget allows replicas on one node in datasets strictly under one
// parent dataset.
type AllowedTarget struct {
	// Node is the name of the node that may receive replicas.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')`,message="must be a Kubernetes node name: a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', beginning and ending with a letter or digit)"
	Node string `json:"node"`
	// ParentDataset: a replica dataset must be a descendant of it
	// (ParentDataset/...), never ParentDataset itself. A pool name ("tank")
	// allows any dataset of the pool except its root. A dataset name, with
	// the rules of DatasetReplication's datasets (so no trailing '/').
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:XValidation:rule=`!self.contains('@') && !self.contains('#')`,message="a dataset name cannot contain '@' or '#': name a dataset, not a snapshot or bookmark"
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[A-Za-z0-9_.:/@#-]*$')`,message="a dataset name may contain only letters, digits, '-', '_', '.', ':' and '/' (no spaces)"
	// +kubebuilder:validation:XValidation:rule=`self.matches('^[A-Za-z]')`,message="a dataset name begins with its pool's name, which begins with a letter"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('^(mirror|raidz|draid|spare|log|c[0-9])')`,message="pool names beginning with mirror, raidz, draid, spare, log or c and a digit are reserved by ZFS"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('//') && !self.endsWith('/')`,message="a dataset name has no empty component (no trailing or doubled '/')"
	// +kubebuilder:validation:XValidation:rule=`!self.matches('(^|/)[.][.]?(/|$)')`,message="'.' and '..' are not allowed as dataset name components"
	// +kubebuilder:validation:XValidation:rule=`!self.contains('/-')`,message="no component of a dataset name may begin with '-'"
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
