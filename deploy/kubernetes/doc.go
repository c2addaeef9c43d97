// Package kubernetes holds herd's Kubernetes manifests and, in its tests,
// their offline validation: every manifest is decoded strictly into the
// k8s.io/api types (an unknown or misspelled field, a wrong type, fails),
// and checked against what the herd binary really serves and reads. It is
// a module of its own so that herd's go.mod stays free of the Kubernetes
// API packages.
package kubernetes
