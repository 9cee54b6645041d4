"""clipforge.eval"""
