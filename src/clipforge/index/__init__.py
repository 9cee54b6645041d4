"""clipforge.index"""
