// Package deploy holds skewproxy's deployment recipes (Kubernetes native
// sidecar, ECS task definition, systemd unit, docker compose) and the tests
// that keep their key facts true. It contains no code that ships.
package deploy
