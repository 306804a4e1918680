"""Broker adapters behind one interface (:class:`trader.brokers.base.Broker`): the simulator and Alpaca.

Core code (risk, sizing, store, run loop) depends only on the protocol, never on an
adapter; the adapter is chosen once, from the mode (DESIGN.md §4.6: same code path for
sim, paper and live).
"""

from trader.brokers.base import Broker, BrokerAccount, BrokerPosition

__all__ = ["Broker", "BrokerAccount", "BrokerPosition"]
