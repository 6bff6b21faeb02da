"""The seed's e-commerce flow on the Strom toolkit: order created → payment completed → notification.

``python -m examples.ecommerce`` runs it all; README.md explains the parts.
"""
