"""What is timed: models, data, the sweep point (cases), and one module per benchmark family."""
