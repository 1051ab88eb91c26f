// Package deploy holds the deployment files of streamworker: the Prometheus
// scrape configuration and alert rules, the Grafana provisioning and
// dashboard, and the offline checks of the Helm chart and docker-compose
// stack (deploy/check, a module of its own). It has no code; its tests check
// that every configuration key that docker-compose.yml and the Helm chart set
// is a real key of package config.
package deploy
