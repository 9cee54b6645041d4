"""clipforge.serve"""
