"""Telemetry: Prometheus metrics (`metrics`), OpenTelemetry tracing (`tracing`), and the
`/metrics` HTTP handler (`http`) every smsmesh process serves."""
