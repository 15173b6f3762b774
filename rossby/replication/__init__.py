"""Geo-replication: datacenter topology and consistency per operation."""
