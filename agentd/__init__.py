"""agentd: one decentralized learner process per agent."""
