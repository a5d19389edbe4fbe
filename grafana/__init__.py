"""Grafana dashboards as code (grafana-foundation-sdk): `boards` defines them,
`generate` writes and checks grafana/dashboards/*.json."""
