package observe

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DefaultAccessLogBuffer is how many access-log lines may wait for the
// writer before new ones are dropped.
const DefaultAccessLogBuffer = 8192

// accessLogBatch is how many bytes of lines the writer gathers before it
// writes them out; it writes sooner whenever no more lines are waiting.
const accessLogBatch = 64 << 10

// accessLogPause is how long the writer waits after a batch before it
// looks for more lines (see run). With DefaultAccessLogBuffer it bounds
// the rate of lines to millions per second; lines appear at most this
// much later.
const accessLogPause = 2 * time.Millisecond

// AccessLogOptions configure an AccessLog.
type AccessLogOptions struct {
	// Output receives the lines. Nil means io.Discard. It is written by one
	// goroutine, never by a request: a slow or blocked Output makes lines
	// wait, then be dropped, and never slows a request.
	Output io.Writer
	// Format is "json" (also the zero value) or "console".
	Format string
	// Sample is the fraction of requests logged, from 0 to 1; responses
	// with a status of 500 or more are always logged. The zero value logs
	// only those; cmd/postern passes --access-log-sample, 1 by default.
	Sample float64
	// Buffer is how many lines may wait for the writer. Zero means
	// DefaultAccessLogBuffer.
	Buffer int
	// Registerer, if not nil, gets postern_proxy_access_log_dropped_total.
	Registerer prometheus.Registerer
	// Logger receives errors writing to Output. Nil means no logs.
	Logger *zap.Logger
}

// AccessLog writes one line per request, off the request path: a request
// puts a small record in a bounded queue and one goroutine encodes and
// writes the lines, with a zap core of its own (the diagnostic logger is
// separate). When the queue is full the line is dropped and counted.
//
// A line has the fields time (when the request began), request_id,
// client (the peer's IP; behind a trusted proxy, the real client's, see
// TrustedProxies), method, host, path (without the query, which
// may carry secrets), protocol, status, bytes_in and bytes_out (body
// bytes), duration and upstream_duration (seconds), upstream (the
// endpoint's address), namespace, ingress and service (of the route
// that matched). Fields that do not apply are empty or zero.
type AccessLog struct {
	core      zapcore.Core
	out       *batchWriter
	queue     chan accessRecord
	dropped   prometheus.Counter
	drops     atomic.Uint64 // what dropped counts, readable without a registry
	sampleAll bool
	threshold uint64 // a request is sampled when a random uint64 is below it
	log       *zap.Logger

	closed    atomic.Bool
	closing   chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// accessRecord is what a request hands to the writer: copies of what the
// line needs, so that formatting happens off the request path.
type accessRecord struct {
	start       time.Time
	id          string
	remote      string // Record.Client; the writer splits off a port
	method      string
	host        string
	path        string
	proto       string
	status      int
	bytesIn     int64
	bytesOut    int64
	duration    time.Duration
	upstream    string
	upstreamDur time.Duration
	labels      routeLabels
}

// NewAccessLog starts an access log's writer; Close stops it.
func NewAccessLog(opts AccessLogOptions) *AccessLog {
	out := opts.Output
	if out == nil {
		out = io.Discard
	}
	size := opts.Buffer
	if size <= 0 {
		size = DefaultAccessLogBuffer
	}
	a := &AccessLog{
		out:   &batchWriter{out: out},
		queue: make(chan accessRecord, size),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "postern", Subsystem: "proxy", Name: "access_log_dropped_total",
			Help: "Access-log lines dropped because the writer fell behind (a slow or blocked output).",
		}),
		log:     opts.Logger,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	switch s := opts.Sample; {
	case s >= 1:
		a.sampleAll = true
	case s > 0:
		a.threshold = uint64(s * (1 << 64))
	}
	enc := zapcore.EncoderConfig{
		TimeKey:        "time",
		EncodeTime:     zapcore.ISO8601TimeEncoder,
		EncodeDuration: zapcore.SecondsDurationEncoder,
		LineEnding:     zapcore.DefaultLineEnding,
	}
	encoder := zapcore.NewJSONEncoder(enc)
	if opts.Format == "console" {
		encoder = zapcore.NewConsoleEncoder(enc)
	}
	a.core = zapcore.NewCore(encoder, a.out, zapcore.InfoLevel)
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(a.dropped)
	}
	go a.run()
	return a
}

// sampled reports whether a request with a status below 500 is logged.
func (a *AccessLog) sampled() bool {
	return a.sampleAll || (a.threshold > 0 && rand.Uint64() < a.threshold)
}

// record queues the line of a finished request, or drops it when the
// queue is full. It never blocks.
func (a *AccessLog) record(r *Record) {
	if !a.wants(r.Status) {
		return
	}
	rec := accessRecord{
		start:       r.Start,
		id:          r.ID,
		remote:      r.Client,
		method:      r.Method,
		host:        r.Host,
		path:        r.Path,
		proto:       r.Proto,
		status:      r.Status,
		bytesIn:     r.BytesIn,
		bytesOut:    r.BytesOut,
		duration:    r.Duration,
		upstream:    r.Upstream,
		upstreamDur: r.UpstreamDuration,
	}
	if r.Route != nil {
		rec.labels = labelsOf(r.Route, r.labelBackend())
	}
	a.enqueue(rec)
}

// wants reports whether a request answered with code is logged: always
// for 5xx, sampled below. A nil *AccessLog wants nothing.
func (a *AccessLog) wants(code int) bool {
	return a != nil && (code >= 500 || a.sampled())
}

// enqueue queues a line, or drops it (counted) when the queue is full or
// the log closed. It never blocks.
func (a *AccessLog) enqueue(rec accessRecord) {
	if a.closed.Load() {
		a.drop()
		return
	}
	select {
	case a.queue <- rec:
	default:
		a.drop()
	}
}

func (a *AccessLog) drop() {
	a.dropped.Inc()
	a.drops.Add(1)
}

// Dropped returns how many lines were dropped so far
// (postern_proxy_access_log_dropped_total).
func (a *AccessLog) Dropped() uint64 { return a.drops.Load() }

// run writes the queued lines until Close, then what is still queued.
//
// After writing a batch it pauses for accessLogPause before it looks for
// more: under load, requests then find the writer busy rather than parked
// on the queue, and queueing a line costs no wake-up (a futex call). When
// idle it parks, and costs nothing.
func (a *AccessLog) run() {
	defer close(a.done)
	fields := make([]zapcore.Field, 0, 16)
	for {
		select {
		case rec := <-a.queue:
			a.write(&rec, fields)
			a.drain(fields)
			select {
			case <-time.After(accessLogPause):
			case <-a.closing:
			}
		case <-a.closing:
			a.drain(fields)
			return
		}
	}
}

// drain writes every line queued now, then flushes.
func (a *AccessLog) drain(fields []zapcore.Field) {
	for {
		select {
		case rec := <-a.queue:
			a.write(&rec, fields)
		default:
			a.flush()
			return
		}
	}
}

// write encodes one line, and writes the batch out when it is large.
func (a *AccessLog) write(rec *accessRecord, fields []zapcore.Field) {
	client := rec.remote
	if host, _, err := net.SplitHostPort(client); err == nil {
		client = host
	}
	fields = append(fields[:0],
		zap.String("request_id", rec.id),
		zap.String("client", client),
		zap.String("method", rec.method),
		zap.String("host", rec.host),
		zap.String("path", rec.path),
		zap.String("protocol", rec.proto),
		zap.Int("status", rec.status),
		zap.Int64("bytes_in", rec.bytesIn),
		zap.Int64("bytes_out", rec.bytesOut),
		zap.Float64("duration", rec.duration.Seconds()),
		zap.String("upstream", rec.upstream),
		zap.Float64("upstream_duration", rec.upstreamDur.Seconds()),
		zap.String("namespace", rec.labels.namespace),
		zap.String("ingress", rec.labels.ingress),
		zap.String("service", rec.labels.service),
	)
	_ = a.core.Write(zapcore.Entry{Level: zapcore.InfoLevel, Time: rec.start}, fields)
	if len(a.out.buf) >= accessLogBatch {
		a.flush()
	}
}

func (a *AccessLog) flush() {
	err := a.out.flush()
	switch {
	case err != nil && a.out.err == nil:
		a.log.Warn("cannot write the access log; lines are lost until it works again", zap.Error(err))
	case err == nil && a.out.err != nil:
		a.log.Info("access log writable again")
	}
	a.out.err = err
}

// Close stops the access log: lines of requests still running are
// dropped, the queued ones are written. It waits for that until ctx is
// done, and returns ctx's error if the output did not take them in time.
func (a *AccessLog) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		a.closed.Store(true)
		close(a.closing)
	})
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close access log: %w", ctx.Err())
	}
}

// batchWriter gathers encoded lines so that the writer makes one write per
// batch rather than one per line. Only the writer goroutine uses it.
type batchWriter struct {
	buf []byte
	out io.Writer
	err error // the last flush's error
}

func (b *batchWriter) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Sync does nothing: the writer flushes.
func (b *batchWriter) Sync() error { return nil }

func (b *batchWriter) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.out.Write(b.buf)
	b.buf = b.buf[:0]
	if err != nil {
		return fmt.Errorf("write access log: %w", err)
	}
	return nil
}
