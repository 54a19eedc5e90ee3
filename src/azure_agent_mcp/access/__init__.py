"""Temporary access: permissions that expire by themselves (issue 14).

``grants`` holds the local widening of the policy per agent session; ``pim`` makes the same
elevation in Azure through Privileged Identity Management; ``clock`` decides when a grant is over;
``ephemeral`` and ``pim_assign`` give short-lived agent identities their time-bound roles.
"""
