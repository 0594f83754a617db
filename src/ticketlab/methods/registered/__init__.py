"""The methods ticketlab knows, one module each: every module here registers its method when imported
(`methods.registry.register_method`), and the registry imports them all on its first use. Adding a
method is adding a module here. The modules are light (`--help` lists the methods without torch): a
method's function is named by reference, "package.module:function", and imported when it first runs."""
