"""State shared by gateway instances: one interface, kept in memory (one process) or in Redis
(many), with the request path reading local values wherever it can."""
