package s3

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
)

// Every operation's deadline, retries included: opBudget, plus a second
// per minRate bytes an upload carries. An endpoint that accepts
// connections and never answers then fails a list, a stat or a small
// upload within opBudget, instead of five attempts of the transport's
// header timeout (it took 151 s).
const (
	opBudget = 25 * time.Second
	minRate  = 512 << 10 // bytes per second an upload may be as slow as
	// bodyIdle is how long an object's body may stall between bytes
	// before the rest is asked for again (resumingBody).
	bodyIdle = 30 * time.Second
)

// budget is the deadline of an operation with these input parameters; 0
// for GetObject, whose body outlives the call (getCtx).
func budget(params any) time.Duration {
	switch p := params.(type) {
	case *s3api.GetObjectInput:
		return 0
	case *s3api.PutObjectInput:
		return opBudget + time.Duration(aws.ToInt64(p.ContentLength)/minRate)*time.Second
	case *s3api.UploadPartInput:
		return opBudget + time.Duration(aws.ToInt64(p.ContentLength)/minRate)*time.Second
	case *s3api.CompleteMultipartUploadInput:
		// S3 may take minutes to assemble a large object (it answers at
		// once and keeps the connection alive meanwhile).
		return 5 * time.Minute
	}
	return opBudget
}

// addDeadline puts budget's deadline on every operation but GetObject.
func addDeadline(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("walsyncDeadline",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if d := budget(in.Parameters); d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

// getCtx is ctx for a GetObject call: cancelled when the answer has not
// begun within opBudget, but not when it has (the body is read after the
// call returns). stop, called when the call returned, reports whether the
// answer came in time.
// cancel ends the context once the body is done with (its Close).
func getCtx(ctx context.Context) (gctx context.Context, stop func() bool, cancel context.CancelFunc) {
	gctx, cancel = context.WithCancel(ctx)
	var late atomic.Bool
	t := time.AfterFunc(opBudget, func() {
		late.Store(true)
		cancel()
	})
	return gctx, func() bool { return t.Stop() || !late.Load() }, cancel
}

// getObject runs GetObject with the deadline of getCtx: an answer that
// has not begun within opBudget is an error. The returned cancel ends the
// request's context once its body is done with (the body's Close).
func (c *Client) getObject(ctx context.Context, in *s3api.GetObjectInput) (*s3api.GetObjectOutput, context.CancelFunc, error) {
	gctx, stop, cancel := getCtx(ctx)
	out, err := c.api.GetObject(gctx, in)
	if !stop() {
		// Cut at the deadline: whatever the call says, the answer was late.
		if err == nil {
			out.Body.Close()
		}
		err = fmt.Errorf("no answer within %v: %w", opBudget, context.DeadlineExceeded)
	}
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return out, cancel, nil
}
