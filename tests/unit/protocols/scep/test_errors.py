from __future__ import annotations

import pytest

from gateway.errors import ErrorKind
from protocols.scep.errors import fail_info_for
from protocols.scep.vocabulary import FailInfo


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_every_error_kind_has_a_scep_answer(kind: ErrorKind) -> None:
    answer = fail_info_for(kind)
    assert answer is None or isinstance(answer, FailInfo)


def test_transient_backend_failures_answer_pending_and_signature_errors_bad_message_check(
) -> None:
    assert fail_info_for(ErrorKind.BACKEND_UNAVAILABLE) is None
    assert fail_info_for(ErrorKind.BAD_SIGNATURE) is FailInfo.BAD_MESSAGE_CHECK
    assert fail_info_for(ErrorKind.NOT_FOUND) is FailInfo.BAD_CERT_ID
    assert fail_info_for(ErrorKind.UNSUPPORTED_KEY) is FailInfo.BAD_ALG
    assert fail_info_for(ErrorKind.UNAUTHORIZED) is FailInfo.BAD_REQUEST
