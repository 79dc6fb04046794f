"""cti_gateway: calls and legs, and the only service that talks to the softswitch."""
