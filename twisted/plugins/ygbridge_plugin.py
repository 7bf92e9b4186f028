from twisted.application.service import ServiceMaker

ygbridge = ServiceMaker(
    "ygbridge", "ygbridge.tap", "Mail for the Yggdrasil mesh beside a yggdrasil router.", "ygbridge"
)
