"""After the push: served requests compared with the training data (skew), and logged images labelled into the next
span."""
