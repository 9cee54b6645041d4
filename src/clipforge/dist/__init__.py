"""clipforge.dist"""
