// replaced by the planner
