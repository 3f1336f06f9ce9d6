"""When proofs run by themselves: the nightly schedule and the sensors."""
