"""Temporary access: time-bound grants an agent asks for and a human approves (issue 14).

``grants`` holds the local widening of the policy per agent session; ``pim`` makes the same
elevation in Azure through Privileged Identity Management; ``clock`` decides when a grant is over.
"""
