"""envserver: owns the physics of one task and serves it to agentd processes over one ROUTER socket."""
