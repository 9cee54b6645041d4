"""clipforge.convert"""
