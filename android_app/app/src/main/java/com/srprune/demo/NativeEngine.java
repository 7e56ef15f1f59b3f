package com.srprune.demo;

import java.io.File;
import java.nio.ByteBuffer;

/**
 * The staged model (libsrmodel.so, opened by the JNI layer with dlopen) plus the C pixel helpers.
 * Why a thin wrapper: every native failure arrives as an exception with a message (never a crash):
 * IllegalArgumentException for bad sizes, buffers or thread counts, IllegalStateException after close()
 * or when the model fails, OutOfMemoryError. Frames cross as direct RGBA buffers so no NDK bitmap API is needed.
 * Not thread-safe: one FrameProcessor thread owns it.
 */
public final class NativeEngine implements AutoCloseable {
    private static final String JNI_LIBRARY = "srdemo";
    private static Throwable loadError;

    static {
        try {
            System.loadLibrary(JNI_LIBRARY);
        } catch (UnsatisfiedLinkError e) {
            loadError = e;
        }
    }

    private long handle;
    public final int inWidth, inHeight, outWidth, outHeight, scale;

    private NativeEngine(long handle) {
        this.handle = handle;
        int[] s = nativeSizes(handle);
        inWidth = s[0];
        inHeight = s[1];
        outWidth = s[2];
        outHeight = s[3];
        scale = inWidth > 0 ? outWidth / inWidth : 0;
    }

    /** Opens nativeLibraryDir/libsrmodel.so; the message says what to do when it is missing. */
    public static NativeEngine open(String nativeLibraryDir, int threads) {
        if (loadError != null) {
            throw new IllegalStateException("the app's JNI library failed to load: " + loadError.getMessage());
        }
        File lib = new File(nativeLibraryDir, "libsrmodel.so");
        if (!lib.isFile()) {
            throw new IllegalStateException(
                    "no model staged: run `srprune android stage MODEL`, then rebuild and reinstall the app");
        }
        return new NativeEngine(nativeOpen(lib.getAbsolutePath(), threads));
    }

    /** The handle, or IllegalStateException after close() (the native side refuses handle 0 as well). */
    private long live() {
        if (handle == 0) {
            throw new IllegalStateException("the NativeEngine is closed");
        }
        return handle;
    }

    public String describe() {
        return nativeDescribe(live());
    }

    /** 1..256; IllegalArgumentException otherwise. */
    public void setThreads(int threads) {
        nativeSetThreads(live(), threads);
    }

    /** Model time in ms; in holds inWidth x inHeight RGBA, out gets outWidth x outHeight RGBA. */
    public double upscale(ByteBuffer in, ByteBuffer out) {
        return nativeUpscale(live(), in, out);
    }

    public static void bicubic(ByteBuffer in, int w, int h, int scale, ByteBuffer out) {
        nativeBicubic(in, w, h, scale, out);
    }

    /** {PSNR dB, SSIM} on the BT.601 Y channel with crop_border pixels cut, as srprune.metrics. */
    public static double[] quality(ByteBuffer sr, ByteBuffer hr, int w, int h, int cropBorder) {
        return nativeQuality(sr, hr, w, h, cropBorder);
    }

    @Override
    public void close() {
        if (handle != 0) {
            nativeClose(handle);
            handle = 0;
        }
    }

    private static native long nativeOpen(String path, int threads);
    private static native void nativeClose(long handle);
    private static native int[] nativeSizes(long handle);
    private static native String nativeDescribe(long handle);
    private static native void nativeSetThreads(long handle, int threads);
    private static native double nativeUpscale(long handle, ByteBuffer in, ByteBuffer out);
    private static native void nativeBicubic(ByteBuffer in, int w, int h, int scale, ByteBuffer out);
    private static native double[] nativeQuality(ByteBuffer sr, ByteBuffer hr, int w, int h, int crop);
}
