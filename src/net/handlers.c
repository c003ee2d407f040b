#include "net/handlers.h"

#include "net/access.h"
#include "net/receive.h"

const struct conn_handlers net_handlers = {
    .auth = access_auth,
    .mail = access_mail,
    .rcpt = access_rcpt,
    .message = receive_message,
};
