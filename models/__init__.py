"""scikit-learn models: features from state, training, personas, versioned
artifacts, and the scorer the policy calls."""
