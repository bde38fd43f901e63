"""The connector: the one process that owns one SMPP bind (one SmppConnection).

Modules, one concept each:

    service     lifecycle: recover, connect/bind with backoff, serve, graceful stop
    settings    ConnectorSettings, resolved once from the resources (and the Secret)
    submitter   claim -> submit_sm -> report, pipelined, window- and rate-limited
    compose     a claimed message -> the submit_sm PDUs that carry it
    inbound     deliver_sm / data_sm: receipts and MOs, answered once durable
    mo          reassembly of concatenated MOs without acknowledging anything early
    state       counters, rate meter, ConnectionState publishing
    ratelimit   GCRA limiter with adaptive throttling
    backoff     capped exponential backoff with jitter
    classify    what a submit_sm_resp status means for the message

Entry points used by `smsmesh connector`: `service.settings_from_resources` and
`service.serve`.
"""
