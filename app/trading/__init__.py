"""Trading: order rules, the order service, paper trading and risk."""
