package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/delegated/delegated/operator"
)

// maxEventStream bounds one events stream (a client that wants more
// opens another) and the write deadline of any progress stream.
const maxEventStream = 10 * time.Minute

// events streams a certificate's progress as NDJSON, like a waiting
// action: {"certificate": …} first, then {"event": …} for each step of the
// attempt that runs next (the scheduler's or anyone's) until it ends, the
// client leaves or maxEventStream passes. The console shows live progress
// of attempts it did not start with it.
func (o *Operator) events(w http.ResponseWriter, r *http.Request, p httprouter.Params) {
	name := p.ByName("name")
	ctx, cancel := context.WithTimeout(r.Context(), maxEventStream)
	defer cancel()
	r = r.WithContext(ctx)
	o.run(w, r, name, true, func() (operator.Cert, bool, error) {
		v, err := o.iss.Certificate(ctx, name)
		return v, true, err
	})
}
