"""MEND: a trained hyper-network that turns an edit's gradient into a weight update
(editing/mend/apply.py; the network in network.py, training in train.py)."""
