"""Federation on Flower: a ClientApp that trains the adapters it is sent, a ServerApp, one Strategy per algorithm."""
