"""workorder: customers directory, outage notices, work orders and the callback obligation."""
