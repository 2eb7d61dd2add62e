"""A python-threatexchange extension: fetch a hashfed log into pytx or HMA, verified.

Install with ``pip install 'hashfed[pytx]'``, then::

    threatexchange config extensions add hashfed.sync.pytx
    threatexchange config collab edit hashfed stopncii --create \\
        --urls https://hashfed.stopncii.example --origin stopncii.example/bank \\
        --log-key 'stopncii.example/bank+1a2b3c4d+AbC...'
    threatexchange fetch

The exchange (``HashfedSignalExchangeAPI``, named "hashfed") verifies every
checkpoint signature, consistency and inclusion with hashfed's own code before
it yields anything; records are keyed by log index, so a withdrawn case's
hashes are deleted although their content is erased. ``report_opinion``
publishes feedback through the platform's own hashfed node (the collab's
``feedback_node``, its admin token in ``TX_HASHFED_ADMIN_TOKEN``). See
docs/hma.md.

hashfed's core never imports this package; it imports pytx.
"""

from hashfed.sync.pytx.api import HashfedSignalExchangeAPI
from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest

TX_MANIFEST = ThreatExchangeExtensionManifest(apis=(HashfedSignalExchangeAPI,))

__all__ = ["TX_MANIFEST", "HashfedSignalExchangeAPI"]
