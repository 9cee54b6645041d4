"""clipforge.train"""
