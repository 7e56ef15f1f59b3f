package android.graphics;

public class Canvas {
    public Canvas(Bitmap bitmap) { throw new RuntimeException("Stub!"); }
    public void drawBitmap(Bitmap bitmap, Rect src, Rect dst, Paint paint) { throw new RuntimeException("Stub!"); }
    public void drawLine(float startX, float startY, float stopX, float stopY, Paint paint) { throw new RuntimeException("Stub!"); }
    public void drawText(String text, float x, float y, Paint paint) { throw new RuntimeException("Stub!"); }
}
