package android.widget;

import android.content.Context;
import android.view.View;

public class SeekBar extends View {
    public interface OnSeekBarChangeListener {
        void onProgressChanged(SeekBar seekBar, int progress, boolean fromUser);
        void onStartTrackingTouch(SeekBar seekBar);
        void onStopTrackingTouch(SeekBar seekBar);
    }
    public SeekBar(Context context) { super(context); throw new RuntimeException("Stub!"); }
    public void setMax(int max) { throw new RuntimeException("Stub!"); }
    public void setProgress(int progress) { throw new RuntimeException("Stub!"); }
    public void setOnSeekBarChangeListener(OnSeekBarChangeListener l) { throw new RuntimeException("Stub!"); }
}
