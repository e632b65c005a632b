"""The stand-ins' signature checks against the providers' documented worked examples: Alibaba
Cloud's signature V3 example (``RunInstances``, ``YourAccessKeyId``) and Tencent Cloud's TC3
example (``DescribeInstances`` on ``cvm``, 2019-02-25). The SDKs sign what the service
sends; these pin the checks the integration tests hold the SDKs to. And the SDKs are
loaded only by the sender that uses them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from tests.integration.provider_standins import (
    acs3_canonical_request,
    acs3_expected_signature,
    rfc3986,
    tencent_expected_signature,
)
from voting_service.fraud.sms_providers import endpoint_parts

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ACS3_HEADERS = {
    "host": "ecs.cn-shanghai.aliyuncs.com", "x-acs-action": "RunInstances",
    "x-acs-content-sha256": EMPTY_SHA256, "x-acs-date": "2023-10-26T10:22:32Z",
    "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
    "x-acs-version": "2014-05-26",
}
ACS3_QUERY = [("RegionId", "cn-shanghai"),
              ("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd")]


def test_acs3_check_matches_the_documented_example() -> None:
    assert hashlib.sha256(b"").hexdigest() == EMPTY_SHA256
    canonical = acs3_canonical_request("POST", "/", ACS3_QUERY, ACS3_HEADERS,
                                       sorted(ACS3_HEADERS), EMPTY_SHA256)
    assert canonical.splitlines()[2] == (
        "ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai")
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259")
    assert acs3_expected_signature("YourAccessKeySecret", canonical) == (
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0")
    assert acs3_expected_signature("YourAccessKeySecreT", canonical) != (
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0")


def test_acs3_encoding_is_rfc_3986() -> None:
    assert rfc3986("a b*c~d/é+") == "a%20b%2Ac~d%2F%C3%A9%2B"
    assert rfc3986("江苏") == "%E6%B1%9F%E8%8B%8F"


def test_tc3_check_matches_the_documented_example() -> None:
    # the example's key is published masked, and its signature is of the masked key
    payload = (b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], '
               b'"Name": "instance-name"}]}')
    headers = {"content-type": "application/json; charset=utf-8",
               "host": "cvm.tencentcloudapi.com"}
    signed = ["content-type", "host"]
    assert tencent_expected_signature("Gu5t9xGARNpq86cd98joQYCN3*******", "cvm",
                                      1551113065, headers, signed, payload) == (
        "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c")
    assert tencent_expected_signature("Gu5t9xGARNpq86cd98joQYCN3*******", "cvm",
                                      1551113066, headers, signed, payload) != (
        "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c")


def test_sdk_endpoints_are_a_scheme_and_a_host() -> None:
    assert endpoint_parts("https://dysmsapi.aliyuncs.com") == ("https", "dysmsapi.aliyuncs.com")
    assert endpoint_parts("http://127.0.0.1:8081/") == ("http", "127.0.0.1:8081")
    for bad in ("dysmsapi.aliyuncs.com", "ftp://x", "https://x/sms", "https://"):
        with pytest.raises(ValueError):
            endpoint_parts(bad)


def test_the_sdks_are_loaded_only_by_their_sender() -> None:
    script = """
import sys
from voting_service.app import create_app
from voting_service.fraud.sms import sender_from
from voting_service.settings import Settings
base = {"VOTING_SECRET_KEY": "k" * 20, "VOTING_PEPPER": "p" * 20}
create_app(Settings.from_env(base))
sdks = ("alibabacloud_dysmsapi20170525", "tencentcloud")
print(sorted(m for m in sys.modules if m.startswith(sdks)) == [], end=" ")
sender_from(Settings.from_env({**base, "VOTING_SMS_SENDER": "tencent",
    "VOTING_TENCENT_SECRET_ID": "id", "VOTING_TENCENT_SECRET_KEY": "key",
    "VOTING_TENCENT_SMS_APP_ID": "1400", "VOTING_SMS_SIGN_NAME": "s",
    "VOTING_SMS_TEMPLATE_ID": "1"}))
print("tencentcloud.sms.v20210111.sms_client" in sys.modules,
      "alibabacloud_dysmsapi20170525" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert out.stdout.split() == ["True", "True", "False"], out.stderr
