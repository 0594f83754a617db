"""The sweep engine: a YAML spec (`spec`, `sweep_spec`) expanded into runs (`plan`,
`planned_configs`), run here or through launchers (`runner`, `launched`, `launchers`) by what
executes one run (`work`, `adapters`, `methods`), with its provenance and status. Its public names
are exported by `ticketlab.studies`."""
