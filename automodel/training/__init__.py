"""Training one candidate: genome to network (``model``), the training loop (``trainer``), weight
inheritance (``inheritance``), checkpoints and ONNX (``export``), test reports (``report``) and
predictions (``predict``)."""
