"""acd_router: queues, agents and their states, and routing decisions."""
