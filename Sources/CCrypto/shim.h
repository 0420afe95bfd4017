#ifndef STARLING_CCRYPTO_H
#define STARLING_CCRYPTO_H
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/hmac.h>
#endif
