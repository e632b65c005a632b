"""The Aliyun RPC signature against the worked example of Alibaba Cloud's SMS signing
documentation (AccessKeyId ``testId``, secret ``testSecret``), for the sender and for the
stand-in's independent check; the Tencent TC3 signer against the stand-in's check."""

from __future__ import annotations

import json

from tests.integration.provider_standins import (
    aliyun_expected_signature,
    tencent_expected_signature,
)
from voting_service.fraud.sms_providers import (
    TC3_CONTENT_TYPE,
    TencentSender,
    aliyun_signature,
    percent,
)

DOCUMENTED = {
    "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
    "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}', "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}


def test_aliyun_signature_matches_the_documented_example() -> None:
    assert aliyun_signature("GET", DOCUMENTED, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert aliyun_expected_signature("GET", list(DOCUMENTED.items()), "testSecret") == (
        "zJDF+Lrzhj/ThnlvIToysFRq6t4=")
    assert aliyun_signature("POST", DOCUMENTED, "testSecret") != "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_percent_encoding_is_rfc_3986() -> None:
    assert percent("a b*c~d/é") == "a%20b%2Ac~d%2F%C3%A9"


def test_tencent_signature_is_what_the_stand_in_checks() -> None:
    sender = TencentSender("https://SMS.tencentcloudapi.com", "AKIDexample", "key-example",
                           "ap-guangzhou", "1400006666", "签名", "1234567", 5)
    payload, headers = sender.request("13912345678", "123456", 1_700_000_000.0)
    assert json.loads(payload)["PhoneNumberSet"] == ["+8613912345678"]
    auth = headers["Authorization"]
    fields = dict(p.strip().split("=", 1) for p in auth.split(" ", 1)[1].split(","))
    assert fields["Credential"] == "AKIDexample/2023-11-14/sms/tc3_request"
    lowered = {"content-type": TC3_CONTENT_TYPE, "host": headers["Host"]}
    assert headers["Host"] == "sms.tencentcloudapi.com"
    assert fields["Signature"] == tencent_expected_signature(
        "key-example", "sms", 1_700_000_000, lowered, ["content-type", "host"], payload)
    assert fields["Signature"] != tencent_expected_signature(
        "key-example", "sms", 1_700_000_001, lowered, ["content-type", "host"], payload)
