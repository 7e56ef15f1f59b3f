package android.graphics;

import java.nio.Buffer;

public final class Bitmap {
    public enum Config { ALPHA_8, RGB_565, ARGB_4444, ARGB_8888, RGBA_F16, HARDWARE, RGBA_1010102 }
    public static Bitmap createBitmap(int width, int height, Config config) { throw new RuntimeException("Stub!"); }
    public int getWidth() { throw new RuntimeException("Stub!"); }
    public int getHeight() { throw new RuntimeException("Stub!"); }
    public Config getConfig() { throw new RuntimeException("Stub!"); }
    public void copyPixelsToBuffer(Buffer dst) { throw new RuntimeException("Stub!"); }
    public void copyPixelsFromBuffer(Buffer src) { throw new RuntimeException("Stub!"); }
}
