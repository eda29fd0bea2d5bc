// Package deploy holds xmodal's deployment files (the container image, the compose
// stack, Kubernetes manifests, the Grafana dashboard) and the tests that check them
// without a container engine: every manifest is strictly decoded into the
// Kubernetes API types, the compose file is loaded with compose-go, the Dockerfile
// is linted with hadolint, and the dashboard's metrics are scraped from a running
// xmodal. See docs/operations.md.
package deploy
