package com.srprune.demo;

import android.graphics.Bitmap;
import android.graphics.Canvas;
import android.graphics.Paint;
import android.graphics.Rect;
import android.os.Handler;
import android.os.HandlerThread;
import android.os.Looper;
import android.os.SystemClock;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * Runs the model on one background thread. Why: the UI thread must never wait for a frame, and a
 * camera faster than the model must not build a queue (latency would grow without bound), so
 * offer() drops a frame while the previous one is still being processed.
 * Java 8 syntax without lambdas (anonymous classes instead): `srprune android apk` dexes it with dx, which
 * turns lambdas into invoke-custom calls that Android's runtime cannot run (Gradle's d8 would desugar them).
 */
public final class FrameProcessor {
    /** Called on the UI thread. */
    public interface Listener {
        void onFrame(Bitmap result, Bitmap bicubic, Stats stats);

        void onError(String message);
    }

    /** Per-frame numbers shown on screen. */
    public static final class Stats {
        public double modelMs, frameMs, fps, psnr = Double.NaN, ssim = Double.NaN, bicubicPsnr = Double.NaN,
                bicubicSsim = Double.NaN;
        public long processed, dropped;
    }

    private final NativeEngine engine;
    private final Listener listener;
    private final HandlerThread thread = new HandlerThread("sr-worker");
    private final Handler worker, ui = new Handler(Looper.getMainLooper());
    private final AtomicBoolean busy = new AtomicBoolean(false);
    private final ByteBuffer in, out, bic;
    private final AtomicLong dropped = new AtomicLong();
    private long processed, lastDone;
    private double fpsEma;

    public FrameProcessor(NativeEngine engine, Listener listener) {
        this.engine = engine;
        this.listener = listener;
        in = ByteBuffer.allocateDirect(engine.inWidth * engine.inHeight * 4);
        out = ByteBuffer.allocateDirect(engine.outWidth * engine.outHeight * 4);
        bic = ByteBuffer.allocateDirect(engine.outWidth * engine.outHeight * 4);
        thread.start();
        worker = new Handler(thread.getLooper());
    }

    /** Queue a frame unless one is in flight; returns false (and counts a drop) when busy. */
    public boolean offer(Bitmap frame) {
        return offer(frame, null);
    }

    /** Grab a frame only when the worker is free (grabbing itself costs time, e.g. TextureView.getBitmap). */
    public boolean offerFrom(Supplier<Bitmap> grab) {
        if (busy.get()) {
            dropped.incrementAndGet();
            return false;
        }
        Bitmap frame = grab.get();
        return frame != null && offer(frame, null);
    }

    /** As offer(frame), and with a ground truth the result's PSNR/SSIM are computed too. */
    public boolean offer(Bitmap frame, Bitmap groundTruth) {
        if (!busy.compareAndSet(false, true)) {
            dropped.incrementAndGet();
            return false;
        }
        worker.post(new Runnable() {
            @Override
            public void run() {
                process(frame, groundTruth);
            }
        });
        return true;
    }

    public void setThreads(int threads) {
        worker.post(new Runnable() {
            @Override
            public void run() {
                try {
                    engine.setThreads(threads);
                } catch (RuntimeException e) {
                    report(e.getMessage());
                }
            }
        });
    }

    public void release() {
        worker.post(new Runnable() {
            @Override
            public void run() {
                engine.close();
                thread.quitSafely();
            }
        });
    }

    /** Centre-crop to the model's aspect ratio and scale to its fixed input size. */
    static Bitmap fit(Bitmap src, int w, int h) {
        if (src.getWidth() == w && src.getHeight() == h && src.getConfig() == Bitmap.Config.ARGB_8888) return src;
        Bitmap dst = Bitmap.createBitmap(w, h, Bitmap.Config.ARGB_8888);
        int sw = src.getWidth(), sh = src.getHeight();
        int cw = Math.min(sw, (int) ((long) sh * w / h)), ch = Math.min(sh, (int) ((long) sw * h / w));
        Rect from = new Rect((sw - cw) / 2, (sh - ch) / 2, (sw - cw) / 2 + cw, (sh - ch) / 2 + ch);
        new Canvas(dst).drawBitmap(src, from, new Rect(0, 0, w, h), new Paint(Paint.FILTER_BITMAP_FLAG));
        return dst;
    }

    private void process(Bitmap frame, Bitmap groundTruth) {
        try {
            long t0 = SystemClock.elapsedRealtimeNanos();
            Bitmap lr = fit(frame, engine.inWidth, engine.inHeight);
            in.rewind();
            lr.copyPixelsToBuffer(in);
            Stats s = new Stats();
            s.modelMs = engine.upscale(in, out);
            NativeEngine.bicubic(in, engine.inWidth, engine.inHeight, engine.scale, bic);
            Bitmap result = toBitmap(out), bicubic = toBitmap(bic);
            if (groundTruth != null) {
                ByteBuffer hr = ByteBuffer.allocateDirect(engine.outWidth * engine.outHeight * 4);
                fit(groundTruth, engine.outWidth, engine.outHeight).copyPixelsToBuffer(hr);
                double[] q = NativeEngine.quality(out, hr, engine.outWidth, engine.outHeight, engine.scale);
                double[] b = NativeEngine.quality(bic, hr, engine.outWidth, engine.outHeight, engine.scale);
                s.psnr = q[0];
                s.ssim = q[1];
                s.bicubicPsnr = b[0];
                s.bicubicSsim = b[1];
            }
            long done = SystemClock.elapsedRealtimeNanos();
            s.frameMs = (done - t0) / 1e6;
            if (lastDone != 0) {
                double inst = 1e9 / Math.max(1, done - lastDone);
                fpsEma = fpsEma == 0 ? inst : 0.9 * fpsEma + 0.1 * inst;
            }
            lastDone = done;
            s.fps = fpsEma;
            s.processed = ++processed;
            s.dropped = dropped.get();
            ui.post(new Runnable() {
                @Override
                public void run() {
                    listener.onFrame(result, bicubic, s);
                }
            });
        } catch (OutOfMemoryError e) {
            report("out of memory for " + engine.outWidth + "x" + engine.outHeight + " frames: " + e.getMessage());
        } catch (RuntimeException e) {
            report(e.getMessage());
        } finally {
            busy.set(false);
        }
    }

    private Bitmap toBitmap(ByteBuffer buf) {
        Bitmap b = Bitmap.createBitmap(engine.outWidth, engine.outHeight, Bitmap.Config.ARGB_8888);
        buf.rewind();
        b.copyPixelsFromBuffer(buf);
        buf.rewind();
        return b;
    }

    private void report(String message) {
        ui.post(new Runnable() {
            @Override
            public void run() {
                listener.onError(message);
            }
        });
    }
}
