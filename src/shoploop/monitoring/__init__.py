"""What the loop watches and decides: drift, online quality, counterfactual estimates, the decision."""
