package android.view;

import android.content.Context;
import android.graphics.Bitmap;
import android.graphics.SurfaceTexture;

public class TextureView extends View {
    public interface SurfaceTextureListener {
        void onSurfaceTextureAvailable(SurfaceTexture surface, int width, int height);
        void onSurfaceTextureSizeChanged(SurfaceTexture surface, int width, int height);
        boolean onSurfaceTextureDestroyed(SurfaceTexture surface);
        void onSurfaceTextureUpdated(SurfaceTexture surface);
    }
    public TextureView(Context context) { super(context); throw new RuntimeException("Stub!"); }
    public void setSurfaceTextureListener(SurfaceTextureListener listener) { throw new RuntimeException("Stub!"); }
    public Bitmap getBitmap(int width, int height) { throw new RuntimeException("Stub!"); }
}
