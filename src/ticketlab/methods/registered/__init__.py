"""The methods ticketlab knows, one module each: every module here registers its method when imported
(`methods.registry.register_method`), and the registry imports them all on its first use. Adding a
method is adding a module here; it imports torch only inside its functions (`--help` lists the
methods without it)."""
