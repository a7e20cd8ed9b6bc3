"""What the tests share besides fixtures: servers, simulators, a worker fleet, oracles and drivers."""
