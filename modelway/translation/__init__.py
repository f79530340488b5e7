"""The translation layer: what an attempt does when the client's dialect and the provider's
differ. Chosen per attempt (a fallback may land on another kind of provider) by
`choose(request, provider)`; `None` means the same dialect on both sides, and the request
goes as it always did: the client's bytes out, the upstream's bytes back, untouched.

    client      provider                       translation                path upstream
    anthropic   anthropic                      none (native)              messages, messages/count_tokens
    anthropic   openai chat (any other kind)   messages.MessagesToChat     chat/completions
                                               messages.CountTokensEstimate  (none: the gateway answers)
    openai      anthropic                      chat.ChatToMessages         messages (chat/completions only;
                                                                           other paths go as they are)
    responses   responses_api: native          none (native)              responses
    responses   openai chat, translate         responses.ResponsesToChat   chat/completions
    responses   anthropic, translate           responses.ResponsesToMessages  messages

Modules:
    base        the Translation interface, LocalResponse (an answer the gateway makes itself)
    messages    Anthropic Messages clients on OpenAI chat backends
    chat        OpenAI chat clients on Anthropic backends
    responses   Responses clients on chat backends (and, composed, on Anthropic ones)

The relay side is `modelway.proxy.translated` (answers, streams with pings, errors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelway.proxy.dialect import ANTHROPIC, OPENAI, RESPONSES
from modelway.translation.base import LocalResponse, Translation
from modelway.translation.chat import ChatToMessages
from modelway.translation.messages import CountTokensEstimate, MessagesToChat
from modelway.translation.responses import ResponsesToChat, ResponsesToMessages

if TYPE_CHECKING:
    from modelway.providers.base import Provider
    from modelway.proxy.incoming import Incoming

__all__ = ["LocalResponse", "Translation", "choose"]


def choose(request: Incoming, provider: Provider) -> type[Translation] | None:
    """The translation from the client's dialect to `provider`'s, for this request's path;
    None when the request goes as it is. Called only when the two dialects differ (or the
    client speaks Responses, which no provider speaks by its kind)."""
    client = request.dialect
    if client == RESPONSES:
        if provider.responses_native:
            return None
        return ResponsesToMessages if provider.dialect == ANTHROPIC else ResponsesToChat
    path = request.path
    if client == ANTHROPIC:
        if path.endswith("/messages"):
            return MessagesToChat
        if path.endswith("/messages/count_tokens"):
            return CountTokensEstimate
        return None  # another Anthropic API (batches, ...): forwarded as it is
    if client == OPENAI and path.endswith("/chat/completions"):
        return ChatToMessages
    return None
